"""`tools/new-model`: from a Hugging Face model id to a sized, routed, validated model folder.

    inputs.py       the request and its checks (ids, names, environment, paths)
    repo.py         what the repository offers: GPU-family components, NodePools, the base
    choose.py       instance type, TP and context from the sizing engine
    scaffold.py     the model folder's files, in the style of the hand-written ones
    edit.py         round-trip edits of kustomization lists (ruamel.yaml)
    transaction.py  staging copy, validation there, atomic apply with rollback
    run.py          the whole change, from request to summary
"""
