"""seqlab: readable, equation-faithful sequence models on PyTorch."""

__version__ = "0.5.0"


def load_pretrained(directory):
    """The model of a ``seqlab export --format safetensors`` folder (eval mode, no pickle read); see seqlab.export."""
    from .export import load_pretrained as load

    return load(directory)
