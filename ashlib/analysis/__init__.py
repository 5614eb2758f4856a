"""Measurements on trained networks: ASH thresholds and active fractions, Frechet distances
(:mod:`ashlib.analysis.metrics`) and Grad-CAM (:mod:`ashlib.analysis.gradcam`)."""
