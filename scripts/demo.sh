#!/usr/bin/env bash
# A real knock against a real knockd: builds the suite, starts `knockd` in a
# throw-away network namespace, knocks from a second one with `knock`, shows
# the door opening (log lines and the command's effect) and closing again,
# then removes everything. Needs root (network namespaces, packet capture).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "demo: needs root for network namespaces and packet capture (try: sudo $0)" >&2
  exit 1
fi

bash scripts/setup.sh
echo "== building"
cargo build --quiet -p knockd -p knock -p knock-gen
bin=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug

srv=kdemo-srv-$$ cli=kdemo-cli-$$
work=$(mktemp -d)
knockd_pid=
cleanup() {
  [[ -n $knockd_pid ]] && kill "$knockd_pid" 2>/dev/null && wait "$knockd_pid" 2>/dev/null || true
  ip netns del "$srv" 2>/dev/null || true
  ip netns del "$cli" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== two throw-away namespaces joined by a veth pair"
ip netns add "$srv"
ip netns add "$cli"
ip link add kd-srv netns "$srv" type veth peer name kd-cli netns "$cli"
ip -n "$srv" addr add 10.213.0.1/24 dev kd-srv
ip -n "$cli" addr add 10.213.0.2/24 dev kd-cli
for ns in "$srv" "$cli"; do ip -n "$ns" link set lo up; done
ip -n "$srv" link set kd-srv up
ip -n "$cli" link set kd-cli up

cat > "$work/knockd.conf" <<CONF
[options]
    LogFile = $work/knockd.log

[openSSH]
    Sequence      = 7000,8000:udp,9000
    Seq_Timeout   = 5
    TCPFlags      = syn
    Start_Command = echo "door open for %IP%" > $work/door
    Cmd_Timeout   = 3
    Stop_Command  = rm -f $work/door
CONF
echo "== knockd.conf"
cat "$work/knockd.conf"

ip netns exec "$srv" "$bin/knockd" -i kd-srv -c "$work/knockd.conf" &
knockd_pid=$!
for _ in $(seq 50); do grep -q "starting up" "$work/knockd.log" 2>/dev/null && break; sleep 0.1; done

echo "== knocking: knock -v 10.213.0.1 7000 8000:udp 9000"
ip netns exec "$cli" "$bin/knock" -v -d 100 10.213.0.1 7000 8000:udp 9000

for _ in $(seq 50); do [[ -e $work/door ]] && break; sleep 0.1; done
if [[ ! -e $work/door ]]; then
  echo "demo: the door did not open; knockd's log:" >&2
  cat "$work/knockd.log" >&2
  exit 1
fi
echo "== the start command ran: $(cat "$work/door")"
echo "== waiting for Cmd_Timeout (3 s) to close the door"
for _ in $(seq 100); do [[ -e $work/door ]] || break; sleep 0.1; done
if [[ -e $work/door ]]; then echo "demo: the door did not close" >&2; exit 1; fi
echo "== the stop command ran: the door is closed"
kill "$knockd_pid"; wait "$knockd_pid" || true; knockd_pid=
echo "== knockd's log"
cat "$work/knockd.log"
echo "demo: OK"
