# MdAFuse image for the Ray cohort job (KubeRay / Ray cluster launcher / local docker run).
#
#   docker build -t mdafuse:0.1.0-cpu .                                        # CPU (default)
#   docker build -t mdafuse:0.1.0-cu124 --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 .
#   docker run --rm -v $PWD/out:/out mdafuse:0.1.0-cpu python -m jobs.fuse_cohort --smoke-test --out /out
#
# Ray's version is pinned here and in cluster/*.yaml (rayVersion); the tests check they agree.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG RAY_VERSION=2.60.0

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# procps/wget: KubeRay's probes and `ray stop` expect them in the container
RUN apt-get update && apt-get install -y --no-install-recommends procps wget && rm -rf /var/lib/apt/lists/*

RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}" \
 && pip install "ray[data,default]==${RAY_VERSION}"

WORKDIR /opt/mdafuse
COPY pyproject.toml README.md ./
COPY mdafuse ./mdafuse
COPY jobs ./jobs
RUN pip install . && python -c "import mdafuse, jobs.fuse_cohort; from mdafuse.model.weights import load_model; load_model(); load_model(modality='SPECT')"

RUN useradd --create-home --uid 1000 ray
USER ray
WORKDIR /home/ray
CMD ["python", "-m", "jobs.fuse_cohort", "--help"]
