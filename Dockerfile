# syntax=docker/dockerfile:1
# One image for every callagent process; the process is the container's command:
#   python -m core.main | python -m gateway.main | python -m media.server
# (deploy/ runs each as its own Deployment; docs/deploy.md explains the build and the rollout.)
# Python 3.11 is the version the test suite and the dev venv run on.
ARG PYTHON_VERSION=3.11

# --- build: install the project and its dependencies into a venv ---------------------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, so a code change does not reinstall them (the layer is cached on
# pyproject.toml alone): install the project's requirements, then the project itself.
COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
COPY gen/ gen/
COPY common/ common/
COPY telephony/ telephony/
COPY core/ core/
COPY gateway/ gateway/
COPY media/ media/
COPY sim/ sim/
COPY cli/ cli/
COPY dev/ dev/
RUN pip install --no-deps . && python -m compileall -q /opt/venv

# --- runtime: the venv on a slim base, run as an unprivileged user -------------------------
FROM python:${PYTHON_VERSION}-slim
RUN groupadd --system --gid 10001 callagent \
 && useradd --system --uid 10001 --gid callagent --no-create-home \
      --home-dir /tmp --shell /usr/sbin/nologin callagent
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    CALLAGENT_BIND_HOST=0.0.0.0
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080 8081 50051 9464
CMD ["python", "-m", "gateway.main"]
