"""Pieces of layer files that the engine tests' small networks share: the two data layers, a first
3 x 3 convolution of the images, and the softmax with its cost on a given classifier layer."""

DATA = """
[data]
type=data
dataIdx=0
[labels]
type=data
dataIdx=1
"""


def conv_of_images(name="conv1", filters=4, extra="neuron=relu"):
    """A 3 x 3 convolution of the 3-channel images, padding 1, initW 0.3, `extra` keys after."""
    return f"""
[{name}]
type=conv
inputs=data
channels=3
filters={filters}
filterSize=3
padding=1
initW=0.3
{extra}
"""


def classifier(logits, cost_keys=""):
    """The softmax of layer `logits` and its log-loss cost."""
    return f"""
[probs]
type=softmax
inputs={logits}
[logprob]
type=cost.logreg
inputs=labels,probs
{cost_keys}
"""
