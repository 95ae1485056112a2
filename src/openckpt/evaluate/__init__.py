"""Bias and fairness evaluation of checkpoints: classifiers, masked language models and sentence encoders.

- :mod:`.models` — which kind of model a directory holds and which suite fits it; loading it offline
- :mod:`.fairness` — classifiers: fairlearn ``MetricFrame`` on a labelled CSV with sensitive-feature columns
- :mod:`.crows_pairs` — masked language models: CrowS-Pairs stereotype score by pseudo-log-likelihood
- :mod:`.weat` — sentence encoders: WEAT effect sizes with permutation p-values (:mod:`.encoder` embeds)
- :mod:`.report` — what every suite returns; :mod:`.card` — writing it into a model card and reading it back
- :mod:`.backdoor` — backdoor scans (Neural Cleanse, trigger-token search, a causal-LM probe) into the same card

torch, transformers and fairlearn are imported only by the functions that run a model; import the submodules
(``from openckpt.evaluate.weat import evaluate_weat``), this package imports nothing.
"""
