-- Health of a gpupool.io GpuHostPool (gpupool-operator: Nova hosts moved between host aggregates).
-- The status follows kstatus: status.observedGeneration and metav1.Condition-shaped conditions,
-- decided by the operator's status.py (docs/operator.md, "How Argo CD and Flux read a GpuHostPool"):
--   Ready        True only when Nova matches the spec (reason Converged)
--   Reconciling  True while the operator works towards the spec on its own
--   Stalled      True when nothing more happens without a person or a change in the cloud
--   Paused       True while spec.paused, spec.dryRun or a kill switch keeps moves from starting
-- Reconciling and Stalled are never True together. A False condition carries Ready's reason.
-- Only the base and table libraries are used (no string, no math): the script runs the same as a
-- built-in customization and from argocd-cm without resource.customizations.useOpenLibs.
local hs = {}

local function progressing(message)
  hs.status = "Progressing"
  hs.message = message
  return hs
end

local conditions = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type ~= nil then
      conditions[condition.type] = condition
    end
  end
end

local function isTrue(kind)
  return conditions[kind] ~= nil and conditions[kind].status == "True"
end

local function messageOf(kind, fallback)
  local condition = conditions[kind]
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return fallback
end

-- Deleting: with deletionPolicy ReturnToOnDemand the operator's finalizer holds the resource until
-- every host is back in on-demand.
if obj.metadata.deletionTimestamp ~= nil then
  if obj.spec ~= nil and obj.spec.deletionPolicy == "ReturnToOnDemand" then
    return progressing("Returning the hosts to on-demand before deletion: " .. messageOf("Ready", "waiting for the operator"))
  end
  return progressing("Pending deletion")
end

-- A new resource: the CRD defaults its status to observedGeneration 0 until the operator looks.
if obj.status == nil or obj.status.observedGeneration == nil or obj.status.observedGeneration == 0 then
  return progressing("Waiting for the operator to observe the GpuHostPool")
end

local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and observed < generation then
  return progressing("Waiting for the operator to observe generation " .. generation .. " (status is of generation " .. observed .. ")")
end

if isTrue("Paused") then
  hs.status = "Suspended"
  hs.message = messageOf("Paused", "Paused")
  return hs
end

if isTrue("Stalled") then
  hs.status = "Degraded"
  hs.message = messageOf("Stalled", "Stalled")
  return hs
end

if isTrue("Ready") then
  hs.status = "Healthy"
  hs.message = messageOf("Ready", "")
  return hs
end

if isTrue("Reconciling") then
  return progressing(messageOf("Reconciling", "Reconciling"))
end

return progressing(messageOf("Ready", "Waiting for the operator"))
