#!/usr/bin/env bash
# Installs what sift needs to build, run and test, and only what is missing.
# Idempotent: a second run installs nothing and says so.
set -euo pipefail

APT_PKGS=(
    build-essential cmake pkg-config clang clang-format clang-tidy libclang-rt-14-dev
    libuv1-dev libh2o-dev libh2o-dev-common libcurl4-openssl-dev libcjson-dev
    libsqlite3-dev libpq-dev postgresql librdkafka-dev kcat libyaml-dev libcmocka-dev
    valgrind chromium curl python3
)
NPM_PKGS=(playwright-core openai ajv)

here=$(cd "$(dirname "$0")/.." && pwd)

missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# Node and npm may come from Debian or from another package that bundles npm;
# only ask apt for them when the commands are absent.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
    echo "install-deps: installing Debian packages: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "install-deps: Debian packages: all present"
fi

# Node test tools live in tests/e2e/node_modules, never globally.
e2e="$here/tests/e2e"
mkdir -p "$e2e"
need_npm=()
for p in "${NPM_PKGS[@]}"; do
    [ -d "$e2e/node_modules/$p" ] || need_npm+=("$p")
done
if [ ${#need_npm[@]} -gt 0 ]; then
    echo "install-deps: installing npm packages into tests/e2e: ${need_npm[*]}"
    (cd "$e2e" && npm install --no-audit --no-fund --silent)
else
    echo "install-deps: npm packages: all present"
fi
