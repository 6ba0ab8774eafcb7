#!/bin/sh
# Installs the Debian 12 packages deepseek-local needs to build and test.
# As root it runs apt-get; otherwise it prints the exact command and stops.
set -eu

PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev \
libpcre2-dev libjansson-dev libssl-dev libcmocka-dev \
libevent-dev libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler \
libhiredis-dev libcurl4-openssl-dev python3 e2fsprogs btrfs-progs \
python3-requests prometheus logrotate systemd \
python3-grpcio python3-grpc-tools python3-tenacity redis-server nodejs \
nginx-light python3-yaml curl"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deepseek-local: missing Debian packages:$missing" >&2
    echo "run: sudo apt-get install -y$missing" >&2
    exit 1
fi

echo "deepseek-local: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
