locals {
  # ---------------------------------------------------------------------------------------------
  # The devices' registry password rotates with overlap across two pull-only tokens ("slots").
  # Time is cut into generations of `password_rotation_days` counted from the Unix epoch (UTC):
  # generation g starts at g * period. Generation g's password belongs to slot g % 2 ("even" or
  # "odd"), is created by the first apply in generation g and expires when generation g + 2
  # starts, which is also when the next apply replaces that slot. So each password lives two
  # periods, and the other slot's password (generation g - 1) stays valid for the whole of
  # generation g: the period in which the edge pipeline hands devices the new one.
  #
  # Two tokens, not the two password slots of one token: azurerm_container_registry_token_password
  # is a single resource per token whose `expiry` forces a replacement, and its delete empties
  # both slots (hashicorp/terraform-provider-azurerm#19140, container_registry_token_password_resource.go).
  # The generation is computed at plan time, so a plan has changes only when a new one begins;
  # the IaC pipeline plans on a schedule (main.edge.tf checks the schedules against the period).
  # ---------------------------------------------------------------------------------------------
  password_slots        = { even = 0, odd = 1 }
  password_period_hours = var.password_rotation_days * 24
  # Days from 1970-01-01 to the plan's UTC date: the proleptic Gregorian calendar in 400-year
  # eras of 146097 days, each year counted from March so that a leap day comes last.
  password_plan_month_from_march = (tonumber(formatdate("M", plantimestamp())) + 9) % 12
  password_plan_year             = tonumber(formatdate("YYYY", plantimestamp())) - (local.password_plan_month_from_march >= 10 ? 1 : 0)
  password_plan_era              = floor(local.password_plan_year / 400)
  password_plan_year_of_era      = local.password_plan_year - local.password_plan_era * 400
  password_plan_day_of_year      = floor((153 * local.password_plan_month_from_march + 2) / 5) + tonumber(formatdate("D", plantimestamp())) - 1
  password_plan_day_of_era       = local.password_plan_year_of_era * 365 + floor(local.password_plan_year_of_era / 4) - floor(local.password_plan_year_of_era / 100) + local.password_plan_day_of_year
  password_plan_days             = local.password_plan_era * 146097 + local.password_plan_day_of_era - 719468
  password_generation            = floor(local.password_plan_days / var.password_rotation_days)
  # The newest generation each slot holds: g for slot g % 2, g - 1 for the other.
  password_slot_generation = {
    for slot, parity in local.password_slots :
    slot => local.password_generation - (local.password_generation + parity) % 2
  }
  password_slot_expiry = {
    for slot, generation in local.password_slot_generation :
    slot => timeadd("1970-01-01T00:00:00Z", "${(generation + 2) * local.password_period_hours}h")
  }
  # The slot of the current generation: the key vault secret, and so the next deployment, use it.
  password_current_slot = local.password_generation % 2 == 0 ? "even" : "odd"
}
