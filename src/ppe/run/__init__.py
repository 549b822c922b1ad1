"""The pipeline as data: the step graph, the run layout, the step documents and the runners."""
