"""The comparison the kernel tests of the weighted layers share (tests/kernels/test_conv2d.py,
test_linear.py, test_local.py): our output and (input, weight, bias) gradients against the torch
reference's, each within the op's tolerance (alexnet_raw/checks/tolerances.py), in the input's dtype."""

from alexnet_raw.checks import tolerances


def assert_close(ours, ref, op, what):
    assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
    assert tolerances.close(ours, ref, op, ours.dtype), (what, tolerances.max_errors(ours, ref))


def assert_layer_matches(op, x, ours, reference):
    """ours and reference: (output, (grad_input, grad_weight, grad_bias)); a None reference gradient
    (no bias) must be None in ours too."""
    (y, grads), (ref_y, ref_grads) = ours, reference
    assert y.dtype == x.dtype and all(r is None or r.dtype == x.dtype for r in grads)
    assert_close(y, ref_y, op, "output")
    for name, mine, ref in zip(("grad_input", "grad_weight", "grad_bias"), grads, ref_grads):
        if ref is None:
            assert mine is None, name
        else:
            assert_close(mine, ref, op, name)
