"""``ppe pipeline run``: the step graph (:mod:`ppe.run.graph`) run on this machine."""
