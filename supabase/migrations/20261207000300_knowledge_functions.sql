-- Knowledge storage (and the Q&A list) as SQL functions, like the chat side:
-- both backends call them (`select fn(...)` on Postgres, `rpc()` on Supabase),
-- so each feature is written once, here. Idempotent. Functions take and return
-- jsonb-friendly values; a jsonb result is one value, never capped by
-- PostgREST's max_rows (no paging in the client).
--
-- Supersedes jelly_knowledge_bases, jelly_replace_document and
-- jelly_delete_documents of *_rpc.sql (only the Supabase backend called them).

drop function if exists public.jelly_knowledge_bases();
drop function if exists public.jelly_replace_document(text, text, text, text, timestamptz, text, int, jsonb);
drop function if exists public.jelly_delete_documents(text, text[]);


-- The partial HNSW index for vectors of `p_dimension` (kb_chunks.embedding has no
-- fixed dimension; queries name it the same way to use the index). True when the
-- index exists or was made, false when pgvector cannot index that many dimensions
-- (HNSW on `vector` stops at 2000). The one place that knows the index's shape:
-- m = 24, ef_construction = 128 (see *_knowledge.sql for why).
-- Security definer: making an index needs the table's owner, which Supabase's
-- service role is not; it only ever runs this fixed statement for an integer.
create or replace function public.jelly_kb_vector_index(p_dimension integer)
returns boolean
language plpgsql
security definer
set search_path = public, extensions, pg_temp  -- where `create extension vector` put the opclass
as $$
begin
    if p_dimension is null or p_dimension < 1 or p_dimension > 2000 then
        return false;
    end if;
    if to_regclass(format('public.kb_chunks_embedding_%s_idx', p_dimension)) is not null then
        return true;  -- the usual case: no lock, no notice
    end if;
    perform pg_advisory_xact_lock(7324002);  -- one maker at a time
    execute format(
        'create index if not exists kb_chunks_embedding_%1$s_idx on public.kb_chunks'
        ' using hnsw ((embedding::vector(%1$s)) vector_cosine_ops)'
        ' with (m = 24, ef_construction = 128) where vector_dims(embedding) = %1$s',
        p_dimension);
    return true;
end;
$$;


-- What each knowledge base holds: [{kb, documents, chunks, embedders: [{name,
-- dimension}]}] by kb; a kb's embedders most used first; none when it has no vectors.
create or replace function public.jelly_kb_bases()
returns jsonb
language sql
stable
set search_path = ''
as $$
    with spaces as (
        select d.kb, d.embedder, d.dimension, count(*) as documents,
               coalesce(sum(d.chunks), 0) as chunks
        from public.kb_documents d
        group by d.kb, d.embedder, d.dimension
    ),
    bases as (
        select s.kb, sum(s.documents) as documents, sum(s.chunks) as chunks,
               coalesce(jsonb_agg(jsonb_build_object('name', s.embedder, 'dimension', s.dimension)
                                  order by s.documents desc, s.embedder, s.dimension)
                        filter (where s.embedder is not null), '[]'::jsonb) as embedders
        from spaces s
        group by s.kb
    )
    select coalesce(jsonb_agg(jsonb_build_object('kb', b.kb, 'documents', b.documents,
                                                 'chunks', b.chunks, 'embedders', b.embedders)
                              order by b.kb), '[]'::jsonb)
    from bases b
$$;


-- {source: content_hash} of the documents stored in `p_kb`.
create or replace function public.jelly_kb_document_hashes(p_kb text)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_object_agg(d.source, d.content_hash), '{}'::jsonb)
    from public.kb_documents d
    where d.kb = p_kb
$$;


-- A document and its chunks in one transaction, replacing the stored version and
-- all its old chunks. `p_chunks`: [{"content": ..., "metadata": {...},
-- "embedding": "[0.1,...]" | null}, ...] in order; `p_embedder`/`p_dimension` name
-- the vectors' space (null: no vectors). The first vector of a dimension makes its
-- HNSW index. {document_id, indexed}: indexed is false when the vectors' dimension
-- has no index (too many dimensions), null without vectors.
create or replace function public.jelly_kb_replace_document(
    p_kb text,
    p_source text,
    p_title text,
    p_content_hash text,
    p_updated_at timestamptz,
    p_embedder text,
    p_dimension integer,
    p_chunks jsonb
)
returns jsonb
language plpgsql
set search_path = public, extensions  -- where `create extension vector` put the type
as $$
declare
    v_id bigint;
    v_indexed boolean;
begin
    if p_dimension is not null then
        v_indexed := public.jelly_kb_vector_index(p_dimension);
    end if;
    insert into public.kb_documents as d
        (kb, source, title, content_hash, updated_at, embedder, dimension, chunks)
    values (p_kb, p_source, coalesce(p_title, ''), p_content_hash, p_updated_at, p_embedder,
            p_dimension, jsonb_array_length(p_chunks))
    on conflict (kb, source) do update set
        title = excluded.title, content_hash = excluded.content_hash,
        updated_at = excluded.updated_at, embedder = excluded.embedder,
        dimension = excluded.dimension, chunks = excluded.chunks, ingested_at = now()
    returning d.id into v_id;
    delete from public.kb_chunks c where c.document_id = v_id;
    insert into public.kb_chunks (kb, document_id, content, metadata, embedding)
    select p_kb, v_id, e.chunk ->> 'content', coalesce(e.chunk -> 'metadata', '{}'::jsonb),
           (e.chunk ->> 'embedding')::vector
    from jsonb_array_elements(p_chunks) with ordinality as e (chunk, n)
    order by e.n;
    return jsonb_build_object('document_id', v_id, 'indexed', v_indexed);
end;
$$;


-- Delete documents of a knowledge base (their chunks go with them); how many went.
-- `p_sources`: a json array of sources.
create or replace function public.jelly_kb_delete_documents(p_kb text, p_sources jsonb)
returns integer
language plpgsql
set search_path = ''
as $$
declare
    v_count integer;
begin
    delete from public.kb_documents d
    where d.kb = p_kb
      and d.source in (select jsonb_array_elements_text(coalesce(p_sources, '[]'::jsonb)));
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;


-- After an ingest run changed a kb: refresh the statistics full-text ranking
-- reads (word rarity). Security definer: ANALYZE needs the table's owner.
create or replace function public.jelly_kb_ingest_finished(p_kb text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
    analyze public.kb_chunks;
end;
$$;


-- Question/answer pairs of all users, newest first, strictly older than `p_before`.
create or replace function public.jelly_list_qa(p_limit integer, p_before timestamptz default null)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select coalesce(jsonb_agg(jsonb_build_object(
               'id', q.id, 'question', q.question, 'answer', q.answer,
               'application', q.application, 'created_at', q.created_at,
               'sources', coalesce(q.sources, '[]'::jsonb), 'message_id', q.message_id)
           order by q.created_at desc, q.id desc), '[]'::jsonb)
    from (
        select * from public.qa
        where p_before is null or created_at < p_before
        order by created_at desc, id desc
        limit greatest(coalesce(p_limit, 0), 0)
    ) q
$$;


-- Questions asked, all users together.
create or replace function public.jelly_count_human_messages()
returns bigint
language sql
stable
set search_path = ''
as $$
    select count(*) from public.chat_messages m where m.type = 'human'
$$;


select public.jelly_server_only(array[
        'public.jelly_kb_vector_index(integer)',
        'public.jelly_kb_bases()',
        'public.jelly_kb_document_hashes(text)',
        'public.jelly_kb_replace_document(text, text, text, text, timestamptz, text, integer, jsonb)',
        'public.jelly_kb_delete_documents(text, jsonb)',
        'public.jelly_kb_ingest_finished(text)',
        'public.jelly_list_qa(integer, timestamptz)',
        'public.jelly_count_human_messages()'
    ]);

create or replace function public.jelly_api_version()
returns integer
language sql
immutable
set search_path = ''
as $$ select 3 $$;

notify pgrst, 'reload schema';
