# gpupool-operator image: `gpupool run` by default; `gpupool sim` / `plan` / `reconcile` work too.
#   docker build -t gpupool-operator .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m venv /opt/gpupool \
 && /opt/gpupool/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/gpupool/bin/pip install --no-cache-dir .

FROM python:3.11-slim
COPY --from=build /opt/gpupool /opt/gpupool
COPY examples /opt/gpupool/examples
ENV PATH=/opt/gpupool/bin:$PATH \
    HOME=/tmp \
    PYTHONUNBUFFERED=1
USER 10001:10001
EXPOSE 8080 9464
ENTRYPOINT ["gpupool"]
CMD ["run", "--liveness", "http://0.0.0.0:8080/healthz"]
