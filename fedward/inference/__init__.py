"""Using the global model at a site: export, predict, Grad-CAM."""
