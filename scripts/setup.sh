#!/usr/bin/env bash
# Installs what building and testing the knock suite needs on a fresh Debian
# machine that has only Rust and root. Idempotent: installs only what is missing.
set -euo pipefail

packages=(
  libpcap-dev   # the pcap crate links libpcap (found through pkg-config)
  pkg-config
  iproute2      # `ip netns` for the end-to-end tests and the demo
  knockd        # the classic daemon and client: reference peer of the compatibility tests
  hping3        # crafted packets in the end-to-end tests
  strace        # injects ENOSPC in the disk-full fault test
  iptables      # the firewall of the client tests (DROP until the door opens; a lost hit)
  socat         # the service behind that firewall, next to the knock ports
  python3       # runs the reference implementation in contrib/ against the test vectors
  nmap          # port scans (SYN and connect) in the matching tests
  netcat-openbsd # connect()-based knocks that retransmit their SYN
  curl          # knocking with ordinary tools (real-client tests; also the browser's two connections)
  wget          # knocking with ordinary tools (real-client tests; retries with a new connection)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "setup: missing packages: ${missing[*]}; run this script as root (or: sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # The Debian package must never run as a service next to the tests.
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet knockd 2>/dev/null; then
    systemctl stop knockd || true
  fi
else
  echo "setup: system packages present"
fi

for tool in cargo rustfmt cargo-clippy; do
  command -v "$tool" >/dev/null 2>&1 || { echo "setup: $tool not found; install the Rust toolchain with rustfmt and clippy" >&2; exit 1; }
done
