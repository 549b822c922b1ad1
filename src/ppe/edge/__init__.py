"""The IoT Edge module (``ppedetector``) and its ``ppe edge`` commands."""
