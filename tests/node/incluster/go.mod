module kubeforge.io/tests/node/incluster

go 1.24
