"""Small helpers below everything else: atomic file writes (:mod:`ashlib.utils.io`) and progress
bars that show only where a person can see them (:mod:`ashlib.utils.progress`)."""
