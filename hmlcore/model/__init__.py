"""The model: a trained estimator together with everything needed to use it again.

It imports :mod:`hmlcore.storage` (the lake it publishes to) and nothing of the pipelines, serving,
deploy or CLI layers, so a model loads and predicts anywhere.

- :mod:`~hmlcore.model.container`: :class:`ModelContainer`, the model (spec, encoder, target, predict);
  :mod:`~hmlcore.model.target`: the model kinds and the target's classes;
  :mod:`~hmlcore.model._estimators`: what a bound model must fit; :mod:`~hmlcore.model.lookup`: a registered model by name.
- :mod:`~hmlcore.model.values`: how one value reads (missing, category text, number);
  :mod:`~hmlcore.model.encoding` (:class:`FeatureEncoder`, frames) and :mod:`~hmlcore.model._records` (records);
  :mod:`~hmlcore.model.distributions`: the training distributions saved with the model.
- :mod:`~hmlcore.model.artifacts`: the model's files saved and loaded with their trust checks, in formats
  that cannot run code (:mod:`~hmlcore.model.model_io`), named by signed references (:mod:`~hmlcore.model.signing`).
- :mod:`~hmlcore.model.publishing`: a version published: artifacts, registry record, the gate's decision.
- :mod:`~hmlcore.model.registry` (:class:`ModelRegistry`): published versions, lineage, the champion;
  :mod:`~hmlcore.model.gate`: the champion/challenger gate, under a :mod:`~hmlcore.model.promotion`
  (:class:`PromotionRule`).
- :mod:`~hmlcore.model.split`: the training/validation split (seeded, stratified, by key or by time) and
  each row's identity; :mod:`~hmlcore.model.assessment`: the verdict on held-out rows (metrics, baseline,
  bootstrap intervals, rows left out) and the paired comparison the gate makes;
  :mod:`~hmlcore.model.evaluation`: the kind's metrics and the HTML report;
  :mod:`~hmlcore.model.explain`: per-row contributions and global importance.
"""

from __future__ import annotations

from hmlcore.model.container import ModelContainer
from hmlcore.model.encoding import FeatureEncoder
from hmlcore.model.promotion import PromotionRule
from hmlcore.model.registry import ModelRegistry

__all__ = ["FeatureEncoder", "ModelContainer", "ModelRegistry", "PromotionRule"]
