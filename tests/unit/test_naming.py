import pytest

from gpupool import naming
from gpupool.naming import AggregateKind, classify


def test_default_names_follow_the_conventions():
    assert naming.on_demand_aggregate("L40") == "L40-n3"
    assert naming.nvlink_aggregate("L40") == "L40-n3-NVLink"
    assert naming.spot_aggregate("RTX-A6000") == "RTX-A6000-n3-spot"
    assert naming.runpod_aggregate("RTX-A6000") == "RTX-A6000-n3-runpod"
    assert naming.contract_aggregate("FLA-1") == "Contract-FLA-1"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("L40-n3", AggregateKind(role="onDemand", gpu_type="L40")),
        ("L40-n3-NVLink", AggregateKind(role="onDemand", gpu_type="L40", nvlink=True)),
        ("RTX-A6000-n3", AggregateKind(role="onDemand", gpu_type="RTX-A6000")),
        ("RTX-A6000-n3-spot", AggregateKind(role="spot", gpu_type="RTX-A6000")),
        ("H100-n3-runpod", AggregateKind(role="runpod", gpu_type="H100")),
        (
            "Contract-FLA-4145-0522-Flawless-16xRTX-A6000",
            AggregateKind(
                role="contract", gpu_type="RTX-A6000", contract="FLA-4145-0522-Flawless-16xRTX-A6000"
            ),
        ),
        ("Contract-Customer1", AggregateKind(role="contract", contract="Customer1")),
    ],
)
def test_classify_conventional_names(name, kind):
    assert classify(name) == kind


@pytest.mark.parametrize("name", ["", "compute", "L40", "L40-n4", "Contract-", "az-1", "L40-n3-foo"])
def test_names_outside_the_conventions_are_not_classified(name):
    assert classify(name) is None


@pytest.mark.parametrize("gpu", ["L40", "RTX-A6000", "A100-80G", "H100"])
def test_defaults_classify_back_to_their_gpu_and_role(gpu):
    assert classify(naming.on_demand_aggregate(gpu)) == AggregateKind("onDemand", gpu)
    assert classify(naming.nvlink_aggregate(gpu)) == AggregateKind("onDemand", gpu, nvlink=True)
    assert classify(naming.spot_aggregate(gpu)) == AggregateKind("spot", gpu)
    assert classify(naming.runpod_aggregate(gpu)) == AggregateKind("runpod", gpu)
