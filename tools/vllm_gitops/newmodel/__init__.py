"""`tools/new-model`: from a Hugging Face model id to a sized, routed, validated model folder
(overlays/<env>/models/<name>/) that its own Flux Kustomization and Argo CD Application sync.

    inputs.py       the request and its checks (ids, names, environment, paths)
    repo.py         what the repository offers: GPU-family components, NodePools, the base
    choose.py       instance type, TP and context from the sizing engine
    scaffold.py     the model folder's files, in the style of the hand-written ones
    sync.py         its sync files (clusters/<env>/{flux,argocd}/models/<name>.yaml)
    edit.py         round-trip YAML edits: kustomization lists, sync objects (ruamel.yaml)
    transaction.py  staging copy, validation there, atomic apply with rollback
    run.py          the whole change, from request to summary
"""
