# Shell functions shared by the benchmark scripts (sourced from the
# repository root by bench/run.sh, bench/doors.sh and bench/connections.sh).
#
# The namespace functions use the caller's variables: srv and cli (the two
# namespace names), sif and cif (the two ends of the veth link), srv_ip and
# cli_ip (their /24 addresses); lab_open also needs the caller's function
# stop_processes.

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

stop_pids() { # PID...: stop_pid each, in order (empty ones are skipped)
  local p
  for p in "$@"; do stop_pid "$p"; done
}

# lab_open TAG: the work directory ($work, /tmp/knock-TAG.XXXXXX) and the two
# namespaces joined by a veth link (veth_pair_add). On exit, INT or TERM,
# lab_close runs the caller's stop_processes (its own daemons and clients),
# then removes the namespaces and the work directory.
lab_open() {
  work=$(mktemp -d "/tmp/knock-$1.XXXXXX")
  trap lab_close EXIT
  trap 'exit 130' INT TERM
  veth_pair_add
}

lab_close() {
  stop_processes
  veth_pair_del
  rm -rf "$work"
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

# parse_options NAME OPTION... -- ARG...: the option loop of every script.
# Each OPTION says what one option does:
#   --opt=var         takes a value: var=VALUE
#   --opt=var:value   a switch: var=value
#   --opt=@function   a switch that calls function (several settings at once)
# -h/--help calls the script's usage and exits 0; an unknown argument, or an
# option without its value, exits 2 with a message naming the script (NAME).
# Later options win over earlier ones.
parse_options() {
  local _po_name=$1 _po_spec _po_to _po_found
  local -a _po_specs=()
  shift
  while [[ $# -gt 0 && $1 != -- ]]; do _po_specs+=("$1"); shift; done
  shift
  while [[ $# -gt 0 ]]; do
    case $1 in -h|--help) usage; exit 0 ;; esac
    _po_found=
    for _po_spec in "${_po_specs[@]}"; do
      [[ ${_po_spec%%=*} == "$1" ]] || continue
      _po_found=1 _po_to=${_po_spec#*=}
      if [[ $_po_to == @* ]]; then
        "${_po_to#@}"
      elif [[ $_po_to == *:* ]]; then
        printf -v "${_po_to%%:*}" '%s' "${_po_to#*:}"
      else
        [[ $# -ge 2 ]] || { echo "$_po_name: $1 needs a value (see --help)" >&2; exit 2; }
        printf -v "$_po_to" '%s' "$2"
        shift
      fi
      break
    done
    [[ -n $_po_found ]] || { echo "$_po_name: unknown argument \"$1\" (see --help)" >&2; exit 2; }
    shift
  done
}

# check_int NAME WHAT VALUE MIN [MAX]: exit 2 with a message naming the
# script (NAME) and the setting (WHAT) unless VALUE is a whole number from
# MIN to MAX (no upper bound without MAX).
check_int() {
  local name=$1 what=$2 v=$3 min=$4 max=${5:-} range
  if [[ $v =~ ^[0-9]+$ && $v -ge $min && ( -z $max || $v -le $max ) ]]; then
    return 0
  fi
  if [[ -n $max ]]; then range="from $min to $max"; else range="of at least $min"; fi
  echo "$name: $what must be a whole number $range, got \"$v\"" >&2
  exit 2
}
