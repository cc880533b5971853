"""Provider kinds and the HTTP seam they share (``router.providers.base``). Kind classes are
looked up through ``router.providers.registry`` and imported on first use; nothing is imported
here, so that compiling a route file does not load the HTTP stack."""
