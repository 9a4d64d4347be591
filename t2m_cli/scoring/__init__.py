"""How an inducer's classifiers are scored on data: metrics, the pair protocol's core, super-set
ROC AUC. Shared by model selection during training and by `t2m_cli.evaluation`, so it sits
below both."""
