"""Our diffrax solvers: gradient descent, the stabilized Runge-Kutta-Chebyshev methods (RKC, ROCK2)
with their spectral-radius strategies, and the `auto` choice. Private modules, re-exported as
`gf.*`."""
