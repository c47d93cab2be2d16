#!/usr/bin/env bash
# VNN-COMP: install the tool (once, before any instance runs).
#   install_tool.sh v1
# Runs the project's scripts/setup.sh from the repository root: a virtual environment in .venv
# (or the current Python with QNN_VENV=none) with torch, auto_LiRPA and qnn_plugin, which
# provides the qnn-verify command that run_instance.sh calls.
set -euo pipefail
usage() { echo "usage: $0 v1" >&2; exit 1; }
[ "$#" -eq 1 ] || usage
[ "$1" = "v1" ] || { echo "$0: unsupported VNN-COMP script version '$1' (expected v1)" >&2; usage; }
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO"
exec bash scripts/setup.sh
