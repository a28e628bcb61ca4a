#!/usr/bin/env bash
# Runs every Go fuzz target of the module for a short, bounded time
# (FUZZTIME, default 5s each). Seed corpora run as ordinary tests anyway.
set -euo pipefail
fuzztime="${FUZZTIME:-5s}"
go list -f '{{.ImportPath}} {{.Dir}}' ./... | while read -r pkg dir; do
  targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' || true)
  for t in $targets; do
    echo "fuzz $pkg $t ($fuzztime)"
    go test -run='^$' -fuzz="^${t}\$" -fuzztime="$fuzztime" "$pkg" >/tmp/cairn-fuzz.log 2>&1 || { cat /tmp/cairn-fuzz.log; exit 1; }
  done
done
