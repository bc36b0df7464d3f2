"""Models shared by tasks and techniques: GNNs and their ensembles (``gnn``), the ViT (``vit``) and the
approximable BERT (``bert``, standalone: ``apply`` copies it next to a saved model), and the training loops'
optimizer (``optim``)."""
