process VIRNUCPRO_SUBMIT {
    tag "$meta.id"
    label 'process_single'

    conda "${moduleDir}/environment.yml"
    container "ghcr.io/virnucpro/virnucpro-worker:0.2.0"

    input:
    tuple val(meta), path(fasta)
    val chunk_size
    val redis_url
    val db_url

    output:
    tuple val(meta), path("${prefix}/prediction_results.txt")             , emit: per_frame
    tuple val(meta), path("${prefix}/prediction_results_highestscore.csv"), emit: per_chunk
    tuple val(meta), path("${prefix}/sequence_summary.tsv")               , emit: per_record
    tuple val(meta), path("${prefix}/viral_regions.bed")                  , emit: regions_bed
    tuple val(meta), path("${prefix}/viral_regions.gff3")                 , emit: regions_gff3
    tuple val(meta), path("${prefix}/run.json")                           , emit: run_json
    tuple val(meta), path("${prefix}/*_mqc.json")                         , emit: multiqc
    tuple val(meta), path("${prefix}/report.html")                        , emit: report
    tuple val(meta), path("${prefix}/viral_sequences.fa")                 , emit: viral_fasta, optional: true
    tuple val(meta), path("${prefix}/embeddings.safetensors")             , emit: embeddings, optional: true
    tuple val("${task.process}"), val('virnucpro'), eval("virnucpro --version | sed 's/^virnucpro //'"), topic: versions, emit: versions_virnucpro

    when:
    task.ext.when == null || task.ext.when

    script:
    def args   = task.ext.args ?: ''
    prefix     = task.ext.prefix ?: "${meta.id}"
    // The GPU worker pool does the work: this task only submits the file and waits for the
    // results. Model choice (e.g. '--demo-models' or paths as the workers see them) goes in
    // task.ext.args.
    if ("${fasta}" == "${prefix}") error "Input and output names are the same, use \"task.ext.prefix\" to disambiguate!"
    """
    virnucpro submit \\
        ${fasta} \\
        --chunk-size ${chunk_size} \\
        --wait \\
        --redis '${redis_url}' \\
        --db '${db_url}' \\
        --out ${prefix} \\
        ${args}
    """

    stub:
    def args   = task.ext.args ?: ''
    prefix     = task.ext.prefix ?: "${meta.id}"
    def viral  = args.contains('--viral-fasta') ? "touch ${prefix}/viral_sequences.fa" : ''
    def embeddings = args.contains('--embeddings') ? "touch ${prefix}/embeddings.safetensors" : ''
    if ("${fasta}" == "${prefix}") error "Input and output names are the same, use \"task.ext.prefix\" to disambiguate!"
    """
    echo ${args}
    mkdir -p ${prefix}
    touch ${prefix}/prediction_results.txt
    touch ${prefix}/prediction_results_highestscore.csv
    touch ${prefix}/sequence_summary.tsv
    touch ${prefix}/viral_regions.bed
    echo '##gff-version 3' > ${prefix}/viral_regions.gff3
    echo '{}' > ${prefix}/run.json
    echo '{}' > ${prefix}/virnucpro_mqc.json
    echo '{}' > ${prefix}/virnucpro_calls_mqc.json
    echo '<!DOCTYPE html>' > ${prefix}/report.html
    ${viral}
    ${embeddings}
    """
}
