"""Training the reduced-width shapes model (``overfeat train``; extra ``export``, PyTorch): the
network of :mod:`overfeat.export.model`, trained in stages on generated shapes images
(:mod:`.train`). Importing the package imports nothing heavy; :mod:`.train` imports torch."""
