"""Our models in other tools' formats: one two-stage graph (``twostage``), bioimage.io packages (``bioimageio``)."""
