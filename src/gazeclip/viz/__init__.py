"""Figures for runs: confusion matrix, ROC and robustness plots (plots), Grad-CAM (gradcam,
`gazeclip explain`) and t-SNE of the joint embeddings (`gazeclip tsne`)."""
