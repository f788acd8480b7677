"""Running a trained model on new inputs: the Python API (`detector.load` -> `Detector`), files
and folders (`predict`), in-memory inputs (`inputs`), videos (`video`) and the typed results
(`results`); `gazeclip predict` (`cli`)."""
