# Sourced by scripts/bench-mt and scripts/bench/mt-memory: a private NATS server, one MT worker
# and an edge on free ports, stopped when the calling script exits.
#
#   start_mt_stack BIN_DIR WORKER_BIN WORKER_LOG [ENV=VALUE ...] -- WORKER_FLAGS ...
#
# Sets mt_pid, mt_port, edge_port and nats_port; waits until both services answer /healthz.
# The worker gets --metrics-addr and --redis-url "" (no cache) besides WORKER_FLAGS.

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_mt_stack() {
  local bindir=$1 worker=$2 log=$3; shift 3
  local envs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
  [ "${1:-}" = -- ] && shift
  nats_port=$(free_port); edge_port=$(free_port); mt_port=$(free_port)
  stack_tmp=$(mktemp -d); stack_pids=()
  trap 'for p in "${stack_pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$stack_tmp"' EXIT
  .tools/bin/nats-server -a 127.0.0.1 -p "$nats_port" -js -sd "$stack_tmp" >/dev/null 2>&1 & stack_pids+=($!)
  sleep 0.5
  export VOXBRIDGE_NATS_URL=nats://127.0.0.1:$nats_port VOXBRIDGE_LOG=warn
  env ${envs[@]+"${envs[@]}"} "$worker" --metrics-addr "127.0.0.1:$mt_port" --redis-url "" "$@" \
    >"$log" 2>&1 & mt_pid=$!; stack_pids+=($mt_pid)
  "$bindir/voxbridge-edge" --listen "127.0.0.1:$edge_port" --timeout-s 600 >"${log%.log}-edge.log" 2>&1 & stack_pids+=($!)
  local _
  for _ in $(seq 600); do
    curl -fs "http://127.0.0.1:$mt_port/healthz" >/dev/null && curl -fs "http://127.0.0.1:$edge_port/healthz" >/dev/null && return 0
    kill -0 "$mt_pid" 2>/dev/null || { echo "the MT worker exited: see $log" >&2; return 1; }
    sleep 0.2
  done
  echo "the MT worker or the edge did not become healthy: see $log" >&2; return 1
}
