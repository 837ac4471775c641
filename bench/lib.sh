# Shell functions shared by the benchmark scripts (sourced from the
# repository root by bench/run.sh, bench/doors.sh and bench/connections.sh).
#
# The namespace functions use the caller's variables: srv and cli (the two
# namespace names), sif and cif (the two ends of the veth link), srv_ip and
# cli_ip (their /24 addresses).

# release_bin_dir: the directory of the release binaries of this workspace.
release_bin_dir() {
  echo "$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release"
}

require_root() { # NAME: exit 1 with a message naming the script unless root
  if [[ $(id -u) -ne 0 ]]; then
    echo "$1: needs root for network namespaces and packet capture (try: sudo $0)" >&2
    exit 1
  fi
}

stop_pid() { # PID: TERM, wait up to 5 s, then KILL
  local p=$1
  [[ -n $p ]] || return 0
  kill "$p" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

# veth_pair_add: the two namespaces, joined by a veth link, with addresses.
veth_pair_add() {
  ip netns add "$srv"
  ip netns add "$cli"
  ip link add "$sif" netns "$srv" type veth peer name "$cif" netns "$cli"
  ip -n "$srv" addr add "$srv_ip/24" dev "$sif"
  ip -n "$cli" addr add "$cli_ip/24" dev "$cif"
}

# veth_pair_up: loopback and both veth ends up; waits (up to 5 s) until
# both ends report state UP.
veth_pair_up() {
  for ns in "$srv" "$cli"; do ip -n "$ns" link set lo up; done
  ip -n "$srv" link set "$sif" up
  ip -n "$cli" link set "$cif" up
  for _ in $(seq 50); do
    ip -n "$srv" link show "$sif" | grep -q 'state UP' && ip -n "$cli" link show "$cif" | grep -q 'state UP' && break
    sleep 0.1
  done
}

# veth_pair_del: remove both namespaces (and with them the veth link).
veth_pair_del() {
  ip netns del "$srv" 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
}
