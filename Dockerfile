# MdAFuse image for the Ray cohort job (KubeRay / Ray cluster launcher / local docker run).
#
# The manifests in cluster/ run $REGISTRY/mdafuse:0.1.0-cu130 with REGISTRY=ghcr.io/mdafuse
# (0.1.0 is the version in pyproject.toml). Build and push exactly that image:
#
#   REGISTRY=ghcr.io/mdafuse
#   docker build -t $REGISTRY/mdafuse:0.1.0-cu130 --build-arg TORCH_INDEX=https://pypi.org/simple .
#   docker push $REGISTRY/mdafuse:0.1.0-cu130
#
# Another registry: set REGISTRY and change the `image:` lines of cluster/*.yaml to the same name
# (tests/test_cluster.py checks that the manifests name what these commands build and push).
# A CPU image for local runs (no manifest uses it):
#
#   docker build -t mdafuse:0.1.0-cpu .
#   docker run --rm -v $PWD/out:/out mdafuse:0.1.0-cpu python -m jobs.fuse_cohort --smoke-test --out /out
#
# CUDA torch: download.pytorch.org has no cu124 build of torch 2.13 (cu124 ended with 2.6). PyPI's
# own torch 2.13.0 wheel for CPython 3.11 on manylinux_2_28_x86_64 is the CUDA build, for CUDA 13.0;
# checked on 2026-11-30 from its metadata file:
#   curl -s https://files.pythonhosted.org/packages/01/79/1f2d34ad7034ee1c7ffc1cf8bf0f8213af2a81df6ecdb3997ecec107c09d/torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl.metadata | grep -E '^Requires-Dist: (cuda|nvidia)'
#   Requires-Dist: cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,nvjitlink,nvrtc,nvtx]==13.0.3; platform_system == "Linux"
#   Requires-Dist: cuda-bindings<14,>=13.0.3; platform_system == "Linux" and python_version < "3.15"
#   Requires-Dist: nvidia-cudnn-cu13==9.20.0.48; platform_system == "Linux"
#   Requires-Dist: nvidia-cusparselt-cu13==0.8.1; platform_system == "Linux"
#   Requires-Dist: nvidia-nccl-cu13==2.29.7; platform_system == "Linux"
#   Requires-Dist: nvidia-nvshmem-cu13==3.4.5; platform_system == "Linux"
# (wheel sha256 60fcdcb2f3876e21146cb4524ef06397d727ca9ad5f020818547e25075fe3cb7). The GPU nodes
# need an NVIDIA driver for CUDA 13.0 (580 or newer). More in docs/cluster.md.
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

# procps/wget: KubeRay's probes and `ray stop` expect them in the container.
# rsync, openssh-client: the cluster launcher copies its bootstrap config into the container with
# `rsync -e 'docker exec -i'`, and the autoscaler in the head container sets up workers over ssh.
RUN apt-get update \
 && apt-get install -y --no-install-recommends procps wget rsync openssh-client \
 && rm -rf /var/lib/apt/lists/*

RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}" \
 && pip install "ray[data,default]==${RAY_VERSION}"

WORKDIR /opt/mdafuse
COPY pyproject.toml README.md ./
COPY mdafuse ./mdafuse
COPY jobs ./jobs
# The package installs mdafuse and its dependencies. The Ray entry points (jobs/) are imported from
# this folder, whether the package installs them or not, from any working directory.
ENV PYTHONPATH=/opt/mdafuse
RUN pip install . && python -c "from mdafuse.model.weights import load_model; load_model(); load_model(modality='SPECT')"

RUN useradd --create-home --uid 1000 ray
USER ray
WORKDIR /home/ray
# As the user and from the folder the cluster runs it with: the entry points import.
RUN python -c "import jobs.fuse_cohort, jobs.track_lesions, mdafuse" && python -m jobs.fuse_cohort --help > /dev/null
CMD ["python", "-m", "jobs.fuse_cohort", "--help"]
