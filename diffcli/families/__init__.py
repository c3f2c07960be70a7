"""One adapter per pipeline family: latent layout, x0 estimate, text encoders, defaults, siblings."""
