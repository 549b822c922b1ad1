"""IoT Edge deployment: render ``deployment.template.json`` into manifests and validate them."""
