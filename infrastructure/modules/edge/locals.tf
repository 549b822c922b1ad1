locals {
  # The password stays valid this long after its rotation is due: the rotating apply and the
  # redeployment that hands devices the new password happen after that moment, never exactly at
  # it, and an expired token password no longer authenticates
  # (https://learn.microsoft.com/azure/container-registry/container-registry-token-based-repository-permissions).
  # A rotation itself replaces both password slots at once (see infrastructure/README.md).
  password_grace_hours = 30 * 24
  password_expiry      = timeadd(time_rotating.edge_pull_password.rotation_rfc3339, "${local.password_grace_hours}h")
}
