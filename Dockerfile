# syntax=docker/dockerfile:1
# The release bot's image: `rollout` with the Pulumi CLI, its Python language host, the provider
# plugins and this repository's program, stage files and vendored chart, so a rollback needs
# nothing from the internet but the state backend. Runs as a non-root user on a read-only root
# filesystem (the Deployment in components/release_bot.py mounts /tmp and the report folder).
# Built, scanned and pushed by .github/workflows/bot-image.yml; docs/bot.md says how to update
# the pins. Versions match pyproject.toml / uv.lock (pulumi 3.272, pulumi-kubernetes 4.34.2,
# pulumiverse-grafana 2.44.0); tests/test_dockerfile.py holds them together and runs hadolint.

# python:3.11-slim-bookworm, pinned by digest (update: docker buildx imagetools inspect <tag>)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS pulumi
ARG PULUMI_VERSION=3.272.0
ARG PULUMI_KUBERNETES_VERSION=4.34.2
ARG PULUMIVERSE_GRAFANA_VERSION=2.44.0
ENV PULUMI_HOME=/opt/pulumi-home PULUMI_SKIP_UPDATE_CHECK=true
COPY docker/fetch_pulumi.py /tmp/fetch_pulumi.py
RUN python /tmp/fetch_pulumi.py "${PULUMI_VERSION}" /opt/pulumi \
 && /opt/pulumi/bin/pulumi plugin install resource kubernetes "v${PULUMI_KUBERNETES_VERSION}" \
 && /opt/pulumi/bin/pulumi plugin install resource grafana "v${PULUMIVERSE_GRAFANA_VERSION}" \
      --server github://api.github.com/pulumiverse \
 && cp "${PULUMI_HOME}/plugins/resource-kubernetes-v${PULUMI_KUBERNETES_VERSION}/pulumi-resource-kubernetes" \
       "${PULUMI_HOME}/plugins/resource-grafana-v${PULUMIVERSE_GRAFANA_VERSION}/pulumi-resource-grafana" \
       /opt/pulumi/bin/

FROM ${PYTHON_IMAGE}
ARG UV_VERSION=0.13.9
# The provider plugins sit on PATH as "ambient" plugins: PULUMI_HOME lives on the writable /tmp
# volume at run time, and Pulumi uses a plugin binary it finds on PATH.
ENV PATH=/app/.venv/bin:/opt/pulumi/bin:${PATH} \
    PULUMI_SKIP_UPDATE_CHECK=true \
    PULUMI_HOME=/tmp/pulumi-home \
    HOME=/tmp/home \
    UV_FROZEN=1 UV_NO_SYNC=1 UV_CACHE_DIR=/tmp/uv-cache \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN groupadd --gid 10001 rollout \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp/home --shell /usr/sbin/nologin rollout
COPY --from=pulumi /opt/pulumi/bin/ /opt/pulumi/bin/
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN pip install --no-cache-dir "uv==${UV_VERSION}" \
 && uv sync --frozen --no-dev --no-install-project --no-cache
COPY Pulumi.yaml Pulumi.stable.yaml Pulumi.canary.yaml Pulumi.gradual.yaml Pulumi.majority.yaml Pulumi.full.yaml __main__.py ./
COPY components/ components/
COPY rollout/ rollout/
COPY alerts/ alerts/
COPY charts/ charts/
RUN uv sync --frozen --no-dev --no-cache && python -m compileall -q rollout components
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["rollout"]
CMD ["watch", "--forever", "--leader-elect"]
