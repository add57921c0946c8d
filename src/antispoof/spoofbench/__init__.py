"""SpoofBench, the benchmark builder: real recordings shipped in Debian packages (sources) are
joined into utterances, planned into clip families (plan), spoofed by the attack plugins
(attacks/), passed through one channel model (channel), rendered (render) and written through the
data layer's layout (benchmark); card and probe describe and audit the result. Only the command
layer imports this package."""
