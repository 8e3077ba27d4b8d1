"""Accuracy model: quantize expert weights, compensate the residual with low-rank factors, restore the
top-n experts of each token, and measure the error on real weights and activations."""
