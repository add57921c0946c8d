#!/usr/bin/env bash
# Debian packages SpoofBench needs. Uses apt (root or sudo):
#  - synthesizers and codecs are installed system-wide (apt-get install);
#  - data-only packages (the bona fide recordings, noise beds) are downloaded and extracted
#    under .deps/debian with dpkg -x, without installing them.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=(ffmpeg espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts festvox-ru festvox-ca-ona-hts codec2)
DATA=(tuxpaint-stamps-default ktuberling-data asterisk-moh-opsound-wav)
for lang in en es fr it ru; do DATA+=("asterisk-core-sounds-$lang" "asterisk-core-sounds-$lang-g722"); done

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

missing=()
for pkg in "${TOOLS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
todo=()
for pkg in "${DATA[@]}"; do [ -e ".deps/debian/.extracted/$pkg" ] || todo+=("$pkg"); done

if [ ${#missing[@]} -gt 0 ] || [ ${#todo[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "apt-get install ${missing[*]}"
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p .deps/debs .deps/debian/.extracted
for pkg in "${todo[@]}"; do
  echo "extracting $pkg into .deps/debian"
  (cd .deps/debs && apt-get download -q "$pkg" >/dev/null 2>&1) || { echo "apt-get download $pkg failed" >&2; exit 1; }
  dpkg -x .deps/debs/"${pkg}"_*.deb .deps/debian
  rm -f .deps/debs/"${pkg}"_*.deb
  touch ".deps/debian/.extracted/$pkg"
done
echo "Debian packages ready"
