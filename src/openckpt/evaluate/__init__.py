"""Bias and fairness evaluation of checkpoints: classifiers, masked language models and sentence encoders."""
