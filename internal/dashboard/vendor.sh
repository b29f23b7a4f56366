#!/usr/bin/env bash
# vendor.sh check|update — the front-end files apd embeds, against the
# versions pinned in package.json (and package-lock.json's hashes).
#   check:  install the pinned packages in a temporary directory and fail
#           if any committed copy differs from the release
#   update: copy the pinned release's files in (after editing package.json)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mode="${1:-check}"
# Each line: file in the npm packages, its committed copy.
files="
uplot/dist/uPlot.iife.min.js internal/dashboard/assets/vendor/uplot/uPlot.iife.min.js
uplot/dist/uPlot.min.css internal/dashboard/assets/vendor/uplot/uPlot.min.css
uplot/LICENSE internal/dashboard/assets/vendor/uplot/LICENSE
world-atlas/countries-110m.json internal/chart/geo/worldatlas/countries-110m.json
world-atlas/countries-50m.json internal/chart/geo/worldatlas/countries-50m.json
world-atlas/LICENSE internal/chart/geo/worldatlas/LICENSE
"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cp "$here/package.json" "$tmp/"
if [ -f "$here/package-lock.json" ] && [ "$mode" = check ]; then
  cp "$here/package-lock.json" "$tmp/"
  (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
else
  (cd "$tmp" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  [ "$mode" = update ] && cp "$tmp/package-lock.json" "$here/package-lock.json"
fi
bad=0
while read -r from to; do
  [ -z "$from" ] && continue
  case "$mode" in
    check)
      if ! cmp -s "$tmp/node_modules/$from" "$root/$to"; then
        echo "vendor-check: $to differs from $from of the pinned release" >&2
        bad=1
      fi ;;
    update)
      mkdir -p "$(dirname "$root/$to")"
      cp "$tmp/node_modules/$from" "$root/$to"
      echo "updated $to" ;;
    *) echo "usage: $0 check|update" >&2; exit 2 ;;
  esac
done <<< "$files"
if [ "$mode" = check ]; then
  [ "$bad" = 0 ] || exit 1
  echo "vendor-check: every vendored file is the pinned release's"
fi
