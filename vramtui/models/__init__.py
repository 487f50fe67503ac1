"""What a model is: its architecture, as far as memory is concerned. Pure Python."""
