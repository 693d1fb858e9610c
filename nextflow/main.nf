#!/usr/bin/env nextflow
/*
 * virnucpro: VirNucPro viral sequence identification over many FASTA/FASTQ files.
 *
 *   nextflow run nextflow/ --input samplesheet.csv --models /data/virnucpro_models
 *   nextflow run nextflow/ --input fasta_folder/ --models /data/virnucpro_models -profile gpu
 *   nextflow run nextflow/ --input samplesheet.csv --redis_url redis://host:6379/0 --db_url ...
 *
 * --input is a samplesheet (CSV with the columns sample,fasta; relative paths are taken from
 * the samplesheet's folder) or a folder of FASTA/FASTQ files (plain, .gz, .bz2 or .xz; the
 * sample id is the file name without those extensions). See README_NEXTFLOW.md.
 */

include { VIRNUCPRO_PREDICT } from './modules/virnucpro/virnucpro/predict/main'
include { VIRNUCPRO_SUBMIT  } from './modules/virnucpro/virnucpro/submit/main'

// the sample id of a sequence file: its name without the compression and format extensions
def sampleId(f) {
    return f.name.replaceFirst(/\.(gz|bz2|xz)$/, '').replaceFirst(/\.[^.]+$/, '')
}

def samplesFromSheet(sheet) {
    def base = sheet.parent
    return channel
        .fromPath(sheet, checkIfExists: true)
        .splitCsv(header: true, strip: true)
        .map { row ->
            if (!row.sample || !row.fasta) {
                error "samplesheet ${sheet}: every row needs the columns sample and fasta, got ${row}"
            }
            def given = row.fasta as String
            def fasta = given.startsWith('/') || given.contains('://') ? file(given) : base.resolve(given)
            if (!fasta.exists()) {
                error "samplesheet ${sheet}: sample ${row.sample}: no file ${fasta}"
            }
            [ [ id: row.sample ], fasta ]
        }
}

def samplesFromFolder(folder) {
    def extensions   = ['fa', 'fasta', 'fna', 'fas', 'fq', 'fastq']
    def compressions = ['', '.gz', '.bz2', '.xz']
    def patterns     = extensions.collectMany { ext -> compressions.collect { c -> "${folder}/*.${ext}${c}" } }
    return channel
        .fromPath(patterns)
        .map { fasta -> [ [ id: sampleId(fasta) ], fasta ] }
}

workflow {
    if (!params.input) {
        error "give --input: a samplesheet (CSV: sample,fasta) or a folder of FASTA/FASTQ files"
    }
    if (!((params.chunk_size as Integer) in [300, 500])) {
        error "--chunk_size must be 300 or 500, not ${params.chunk_size}"
    }
    def input = file(params.input, checkIfExists: true)
    ch_samples = input.isDirectory() ? samplesFromFolder(input) : samplesFromSheet(input)

    // one sample id, one output folder: stop early on duplicates
    ch_samples = ch_samples
        .toList()
        .flatMap { samples ->
            if (!samples) {
                error "no FASTA/FASTQ files found in ${params.input}"
            }
            def ids = samples.collect { sample -> sample[0].id }
            def dups = ids.findAll { id -> ids.count(id) > 1 }.unique()
            if (dups) {
                error "sample ids used more than once: ${dups.join(', ')}"
            }
            samples
        }

    if (params.redis_url) {
        // queue mode: a GPU worker pool does the work; each task submits and waits
        if (!params.db_url) {
            error "queue mode (--redis_url) also needs --db_url, the results database"
        }
        VIRNUCPRO_SUBMIT(ch_samples, params.chunk_size as Integer, params.redis_url, params.db_url)
    }
    else {
        if (!params.models && !params.demo_models) {
            error "give --models DIR (esm2_*.pt, the DNABERT-S folder, 300/500_model.pth) or --demo_models"
        }
        def models = params.models ? file(params.models, checkIfExists: true) : []
        VIRNUCPRO_PREDICT(ch_samples, models, params.chunk_size as Integer)
    }

    // software versions of every task, as nf-core pipelines collect them
    channel.topic('versions')
        .map { proc_name, tool, version -> "${proc_name.tokenize(':').last()}:\n    ${tool}: ${version}\n" }
        .unique()
        .collectFile(name: 'versions.yml', storeDir: "${params.outdir}/pipeline_info", sort: true)
}
