"""Matrix-free analysis of a problem: operators and spectra, the tangent kernel and its drift, the
scale criterion, the closed-form linear flow, kernel flows and estimators, rate fits. Private
modules, re-exported as `gf.*`."""
