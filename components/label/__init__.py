"""Label component: weak supervision, model-assisted labels, label errors, Label Studio."""
