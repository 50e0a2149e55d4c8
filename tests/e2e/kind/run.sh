#!/usr/bin/env bash
# Run pulsetrain's e2e tests on a kind cluster, the way a user installs it: build both images, load them
# into kind, start a throw-away Pulsar (manifests/dev/), `helm install` the chart, then run tests/e2e
# against the cluster with PULSETRAIN_OPERATOR_DEPLOYED=1 (the chart's operator does the work, the tests
# only apply pipelines and read their status). See tests/e2e/kind/README.md.
#
# Usage: tests/e2e/kind/run.sh [extra pytest arguments, e.g. -k digits]
# Environment (all optional):
#   KIND_CLUSTER_NAME   cluster name (default pulsetrain)
#   KEEP_CLUSTER=1      keep the cluster at the end (a cluster that existed before the run is always kept)
#   SKIP_BUILD=1        do not build the images (they must exist locally with the version tag)
#   OPERATOR_NAMESPACE  where the chart goes (default pulsetrain-system)
#   PULSAR_LOCAL_PORT, PULSAR_ADMIN_LOCAL_PORT   local ends of the port-forward (default 16650, 18080)
#   PYTHON              the Python 3.11 that creates the test environment (default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
CLUSTER_NAME="${KIND_CLUSTER_NAME:-pulsetrain}"
KEEP_CLUSTER="${KEEP_CLUSTER:-0}"
SKIP_BUILD="${SKIP_BUILD:-0}"
OPERATOR_NAMESPACE="${OPERATOR_NAMESPACE:-pulsetrain-system}"
RELEASE="pulsetrain"
PULSAR_LOCAL_PORT="${PULSAR_LOCAL_PORT:-16650}"
PULSAR_ADMIN_LOCAL_PORT="${PULSAR_ADMIN_LOCAL_PORT:-18080}"
PYTHON="${PYTHON:-python3}"
KIND_RELEASE="v0.33.0"  # the release tests/e2e/kind/cluster.yaml's node image was built for
OPERATOR_IMAGE="pulsetrain/operator"
WORKER_IMAGE="pulsetrain/worker"
PULSAR_IN_CLUSTER="pulsar.pulsar.svc.cluster.local"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/pulsetrain-kind.XXXXXX")"
KUBECONFIG="${WORK}/kubeconfig"
export KUBECONFIG
CREATED_CLUSTER=0
PORT_FORWARD_PID=""

log() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'run.sh: error: %s\n' "$*" >&2; exit 1; }

need() {  # need COMMAND HOW-TO-INSTALL
  command -v "$1" >/dev/null 2>&1 || die "'$1' is not on PATH. $2"
}

check_prerequisites() {
  need docker "Install Docker Engine (Linux) or Docker Desktop: https://docs.docker.com/get-docker/"
  need kind "Install kind ${KIND_RELEASE}: https://kind.sigs.k8s.io/docs/user/quick-start/#installation"
  need kubectl "Install kubectl 1.34 or newer: https://kubernetes.io/docs/tasks/tools/"
  need helm "Install Helm 3: https://helm.sh/docs/intro/install/"
  need "${PYTHON}" "Install Python 3.11 (or set PYTHON to one)."
  docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer ('docker info' fails): start Docker, or add yourself to the docker group."
  "${PYTHON}" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "${PYTHON} is not Python 3.11; set PYTHON=/path/to/python3.11"
  local kind_version
  kind_version="$(kind version | awk '{print $2}')"
  if [[ "${kind_version}" != "${KIND_RELEASE}" ]]; then
    printf 'run.sh: warning: kind %s, but the node image in cluster.yaml is built for kind %s; if the cluster does not come up, use the node image that kind %s lists in its release notes.\n' \
      "${kind_version}" "${KIND_RELEASE}" "${kind_version}" >&2
  fi
}

project_version() {
  sed -n 's/^version = "\(.*\)"$/\1/p' "${ROOT}/pyproject.toml" | head -n 1
}

cleanup() {
  local status=$?
  if [[ -n "${PORT_FORWARD_PID}" ]]; then
    kill "${PORT_FORWARD_PID}" 2>/dev/null || true
  fi
  if [[ ${status} -ne 0 && -s "${KUBECONFIG}" ]]; then
    log "failed (exit ${status}); what the cluster looked like"
    kubectl get pods --all-namespaces -o wide || true
    kubectl -n "${OPERATOR_NAMESPACE}" logs -l "app.kubernetes.io/instance=${RELEASE}" --all-containers --tail=100 || true
    kubectl -n pulsar logs pulsar-0 -c broker --tail=50 || true
  fi
  if [[ "${CREATED_CLUSTER}" == 1 && "${KEEP_CLUSTER}" != 1 ]]; then
    log "deleting kind cluster ${CLUSTER_NAME} (KEEP_CLUSTER=1 keeps it)"
    kind delete cluster --name "${CLUSTER_NAME}" || true
  elif kind get clusters 2>/dev/null | grep -qx "${CLUSTER_NAME}"; then
    log "kept kind cluster ${CLUSTER_NAME}: kind get kubeconfig --name ${CLUSTER_NAME} > kubeconfig; kind delete cluster --name ${CLUSTER_NAME}"
  fi
  rm -rf "${WORK}"
  exit "${status}"
}

create_cluster() {
  if kind get clusters 2>/dev/null | grep -qx "${CLUSTER_NAME}"; then
    log "reusing kind cluster ${CLUSTER_NAME}"
  else
    log "creating kind cluster ${CLUSTER_NAME} (1 control plane, 2 workers)"
    CREATED_CLUSTER=1
    kind create cluster --name "${CLUSTER_NAME}" --config "${ROOT}/tests/e2e/kind/cluster.yaml" --wait 5m
  fi
  kind get kubeconfig --name "${CLUSTER_NAME}" >"${KUBECONFIG}"
  kubectl wait --for=condition=Ready nodes --all --timeout=300s
}

build_and_load_images() {
  local version="$1"
  if [[ "${SKIP_BUILD}" != 1 ]]; then
    log "building ${OPERATOR_IMAGE}:${version} and ${WORKER_IMAGE}:${version}"
    docker build -f "${ROOT}/operator/Dockerfile" --build-arg "VERSION=${version}" -t "${OPERATOR_IMAGE}:${version}" "${ROOT}"
    docker build -f "${ROOT}/workers/Dockerfile" --build-arg "VERSION=${version}" -t "${WORKER_IMAGE}:${version}" "${ROOT}"
  fi
  log "loading the images into kind"
  kind load docker-image --name "${CLUSTER_NAME}" "${OPERATOR_IMAGE}:${version}" "${WORKER_IMAGE}:${version}"
}

start_pulsar() {
  log "starting Pulsar standalone (manifests/dev/pulsar-standalone.yaml; the first image pull takes a while)"
  kubectl apply -f "${ROOT}/manifests/dev/pulsar-standalone.yaml"
  kubectl -n pulsar rollout status statefulset/pulsar --timeout=15m
}

install_chart() {
  local version="$1"
  log "helm install ${RELEASE} charts/pulsetrain into ${OPERATOR_NAMESPACE}"
  helm upgrade --install "${RELEASE}" "${ROOT}/charts/pulsetrain" \
    --namespace "${OPERATOR_NAMESPACE}" --create-namespace \
    --set "image.repository=${OPERATOR_IMAGE}" --set "image.tag=${version}" \
    --set "workerImage.repository=${WORKER_IMAGE}" --set "workerImage.tag=${version}" \
    --wait --timeout 5m
  kubectl wait --for=condition=Established --timeout=60s crd/trainingpipelines.pulsetrain.dev
}

pulsar_ready() {  # pulsar_ready ADMIN-URL: the admin API answers and lists public/default (the tests' namespace)
  "${PYTHON}" -c 'import json, sys, urllib.request
sys.exit(0 if "public/default" in json.load(urllib.request.urlopen(sys.argv[1], timeout=5)) else 1)' "$1" 2>/dev/null
}

forward_pulsar() {
  log "forwarding localhost:${PULSAR_LOCAL_PORT} (Pulsar proxy) and localhost:${PULSAR_ADMIN_LOCAL_PORT} (admin API)"
  kubectl -n pulsar port-forward pod/pulsar-0 "${PULSAR_LOCAL_PORT}:6651" "${PULSAR_ADMIN_LOCAL_PORT}:8080" \
    >"${WORK}/port-forward.log" 2>&1 &
  PORT_FORWARD_PID=$!
  local url="http://127.0.0.1:${PULSAR_ADMIN_LOCAL_PORT}/admin/v2/namespaces/public"
  local i
  for i in $(seq 1 60); do
    if pulsar_ready "${url}"; then return 0; fi
    kill -0 "${PORT_FORWARD_PID}" 2>/dev/null || die "kubectl port-forward exited: $(cat "${WORK}/port-forward.log")"
    sleep 2
  done
  die "Pulsar's admin API did not answer on localhost:${PULSAR_ADMIN_LOCAL_PORT} within $((i * 2))s"
}

run_tests() {
  local venv
  log "preparing the test environment (hack/venv.py; cached after the first run)"
  venv="$("${PYTHON}" "${ROOT}/hack/venv.py")"
  log "running tests/e2e against kind cluster ${CLUSTER_NAME}"
  (
    cd "${ROOT}"
    PULSETRAIN_OPERATOR_DEPLOYED=1 \
    PULSETRAIN_PULSAR_SERVICE_URL="pulsar://127.0.0.1:${PULSAR_LOCAL_PORT}" \
    PULSETRAIN_PULSAR_ADMIN_URL="http://127.0.0.1:${PULSAR_ADMIN_LOCAL_PORT}" \
    PULSETRAIN_PULSAR_POD_SERVICE_URL="pulsar://${PULSAR_IN_CLUSTER}:6650" \
    PULSETRAIN_PULSAR_POD_ADMIN_URL="http://${PULSAR_IN_CLUSTER}:8080" \
      "${venv}/bin/python" -m pytest tests/e2e -m e2e -v "$@"
  )
}

main() {
  check_prerequisites
  local version
  version="$(project_version)"
  [[ -n "${version}" ]] || die "no version found in ${ROOT}/pyproject.toml"
  trap cleanup EXIT
  create_cluster
  build_and_load_images "${version}"
  start_pulsar
  install_chart "${version}"
  forward_pulsar
  run_tests "$@"
  log "e2e tests passed on kind cluster ${CLUSTER_NAME}"
}

main "$@"
