package main

// version is the kustomize release whose library this program is built with (go.mod pins
// sigs.k8s.io/kustomize/api at that release's version): the render cache tells renders of
// different kustomize versions apart by it.
const version = "v5.8.1"
