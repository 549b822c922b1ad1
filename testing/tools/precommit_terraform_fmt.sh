#!/usr/bin/env bash
# pre-commit hook: `terraform fmt` on the staged Terraform files, for users who have terraform.
# Without terraform it says so and succeeds: the hclfmt hook (HashiCorp's formatter compiled to
# WebAssembly, run by node) checks the same canonical format on every machine.
set -euo pipefail
if ! command -v terraform >/dev/null 2>&1; then
  echo "terraform not installed: skipped (the hclfmt hook still checks the format)"
  exit 0
fi
# Check only (like `terraform fmt -check` in CI): print the diff, change nothing; run
# `terraform fmt <file>` to apply it.
exec terraform fmt -check -diff "$@"
