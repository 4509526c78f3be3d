#!/usr/bin/env bash
# Installs what the tests need when it is missing (fresh CI machines): filled in by the io issue.
set -euo pipefail
