"""Building blocks: recurrent layers, attention, positional encodings."""
